-- The list of one user (the smallest user id) among the newest published lists, for the
-- report `decayrec run` prints (scores unrounded: rounded in Python, the same on DuckDB
-- and PostgreSQL).
select user_id, rank, item_id, score, source
from recommendations_latest
where user_id = (select min(user_id) from recommendations_latest)
order by rank
