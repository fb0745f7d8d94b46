-- Returns the newest applied tuning winner (tune_id, decay and model settings as JSON,
-- lambda, score); winners recorded before `applied` existed count as applied.
select tune_id, decay, model, l2, score
from tuning_winners
where coalesce(applied, true)
order by recorded_at desc, tune_id desc
limit 1
