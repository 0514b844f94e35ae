select
    order_date,
    count(*) as orders,
    sum(amount_eur) filter (where status <> 'returned') as revenue_eur
from {{ ref('int_order_payments') }}
group by 1
