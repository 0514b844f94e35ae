-- one row per order, with what was paid for it
select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.status,
    coalesce(sum(p.amount_eur), 0) as amount_eur
from {{ ref('stg_orders') }} o
left join {{ ref('stg_payments') }} p using (order_id)
group by 1, 2, 3, 4
