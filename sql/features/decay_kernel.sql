-- Defines the temp macro decay_kernel(age, ...): K(age) of decayrec/lake/decay.py for an age in
-- days, with the kernel and its parameters passed in (the feature SQL binds them).
-- Reads nothing.
create or replace temp macro decay_kernel(
    age,
    kernel,
    half_life_days,
    power_tau_days,
    power_exponent,
    sigmoid_midpoint_days,
    sigmoid_width_days,
    window_days
) as case kernel
    when 'exponential' then exp(-ln(2) * age / half_life_days)
    when 'power_law' then pow(1 + age / power_tau_days, -power_exponent)
    when 'sigmoid' then 1 / (1 + exp(
        least((age - sigmoid_midpoint_days) / sigmoid_width_days, 700)
    ))
    when 'window' then case when age < window_days then 1.0 else 0.0 end
    else 1.0
end
