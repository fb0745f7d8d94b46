-- Evaluation metrics across runs, oldest run first, read from recommendation_runs.metrics
-- (JSON: {protocol: {n_eval_users, model: {"ndcg@10": ...}, popularity: {...}}}).
-- Returns: run_id, as_of_date, started_at, status, model, n_users, n_rows, n_eval_users,
-- model_ndcg, model_recall, model_map, model_hitrate, model_coverage, popularity_ndcg,
-- popularity_recall (metrics at $k under $protocol; null where a run has none).
-- Parameters:
--   $protocol  user_time or global_time (default: user_time)
--   $k  the metrics' cutoff, 10 or 20 (default: 10)
--   $status  only runs with this status; '' for every run (default: succeeded)
-- Dialects: runs unchanged on DuckDB (json) and PostgreSQL (jsonb): both read JSON with
-- -> and ->>.
with selected_runs as (
    select
        *,
        metrics -> cast($protocol as varchar) as protocol_metrics
    from recommendation_runs
    where cast($status as varchar) = '' or status = cast($status as varchar)
)

select
    run_id,
    as_of_date,
    started_at,
    status,
    model,
    n_users,
    n_rows,
    cast(protocol_metrics ->> 'n_eval_users' as integer) as n_eval_users,
    cast(protocol_metrics -> 'model' ->> ('ndcg@' || $k) as double precision) as model_ndcg,
    cast(protocol_metrics -> 'model' ->> ('recall@' || $k) as double precision) as model_recall,
    cast(protocol_metrics -> 'model' ->> ('map@' || $k) as double precision) as model_map,
    cast(protocol_metrics -> 'model' ->> ('hitrate@' || $k) as double precision) as model_hitrate,
    cast(protocol_metrics -> 'model' ->> ('coverage@' || $k) as double precision)
        as model_coverage,
    cast(protocol_metrics -> 'popularity' ->> ('ndcg@' || $k) as double precision)
        as popularity_ndcg,
    cast(protocol_metrics -> 'popularity' ->> ('recall@' || $k) as double precision)
        as popularity_recall
from selected_runs
order by started_at, run_id
