-- Returns the events of one user shard: the users whose user_id hashes to $shard of
-- $n_shards (DuckDB's hash: the same in every process of one DuckDB version), every column
-- of events. A sharded feature build computes each shard's interactions from these alone.
-- Reads events.
select *
from events
where hash(user_id) % $n_shards = $shard
