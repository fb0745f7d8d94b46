-- Records one tuning trial: the decay settings and lambda tried and the validation score.
insert into tuning_trials
values ($tune_id, $trial, $stage, $decay, $l2, $metric, $score, $seconds, $recorded_at)
