-- Records the winner of a tune run beside the score of the configuration it started from.
insert into tuning_winners (
    tune_id, as_of, protocol, decay, l2, metric, score, baseline_score, n_trials,
    recorded_at, model, applied
)
values (
    $tune_id, $as_of, $protocol, $decay, $l2, $metric, $score, $baseline_score, $n_trials,
    $recorded_at, $model, $applied
)
