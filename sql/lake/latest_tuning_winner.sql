-- Returns the newest tuning winner (tune_id, decay settings as JSON, lambda, score).
select tune_id, decay, l2, score
from tuning_winners
order by recorded_at desc, tune_id desc
limit 1
