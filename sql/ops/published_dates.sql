-- The as-of dates in [$start_date, $end_date] that are published: a succeeded run for the
-- date whose lists are in recommendations (dates pruned from the history are not).
select distinct r.as_of_date
from recommendation_runs as r
where
    r.status = 'succeeded'
    and r.as_of_date between $start_date and $end_date
    and exists (select 1 from recommendations as l where l.as_of_date = r.as_of_date)
order by r.as_of_date
