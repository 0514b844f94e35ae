select
    c.customer_id,
    c.customer_name,
    c.country,
    count(op.order_id) as orders,
    coalesce(sum(op.amount_eur) filter (where op.status <> 'returned'), 0) as revenue_eur
from {{ ref('stg_customers') }} c
left join {{ ref('int_order_payments') }} op using (customer_id)
group by 1, 2, 3
