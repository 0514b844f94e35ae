"""``/api/v1/assets``: the assets durable knows of, recorded (their latest update: which
run and task produced it) or declared by the loaded workflows (tasks that produce them,
workflows they trigger) — lineage for the UI."""

from __future__ import annotations

from durable.api import schemas as s
from durable.api.routing import V1, Call, resource, route

__all__ = ["ROUTES"]


@route(
    "GET",
    f"{V1}/assets",
    summary="Assets: their latest update, the tasks that produce them, the workflows they trigger",
    scope="read",
    responses={200: s.AssetList},
)
async def list_assets(call: Call[None, None]) -> s.AssetList:
    recorded = {a.asset: a for a in await call.deps.store.tracking.assets()}
    producers: dict[str, list[s.AssetProducer]] = {}
    consumers: dict[str, list[str]] = {}
    for loaded in call.deps.registry:
        spec = loaded.spec
        for task in spec.tasks:
            for asset in task.produces:
                producers.setdefault(asset, []).append(
                    s.AssetProducer(workflow=spec.name, task=task.name)
                )
        for asset in spec.on_assets:
            consumers.setdefault(asset, []).append(spec.name)
    views = []
    for name in sorted(recorded.keys() | producers.keys() | consumers.keys()):
        update = recorded.get(name)
        views.append(
            s.AssetView(
                asset=name,
                last_update=s.AssetUpdateView(
                    workflow=update.workflow,
                    run_id=update.run_id,
                    task=update.task,
                    generation=update.generation,
                    updated_at=update.updated_at,
                )
                if update
                else None,
                producers=sorted(producers.get(name, []), key=lambda p: (p.workflow, p.task)),
                consumers=sorted(consumers.get(name, [])),
            )
        )
    return s.AssetList(assets=views)


ROUTES = resource("assets", list_assets)
