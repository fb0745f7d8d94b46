-- Records one tuning trial: the model and decay settings tried and the validation score.
insert into tuning_trials (
    tune_id, trial, stage, decay, l2, metric, score, seconds, recorded_at, model
)
values ($tune_id, $trial, $stage, $decay, $l2, $metric, $score, $seconds, $recorded_at, $model)
