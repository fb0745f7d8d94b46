-- Bulk load of the staged lists: CSV rows streamed over COPY.
copy staged_lists (user_id, rank, item_id, score, source, reason, because_items, score_pct)
from stdin with (format csv)
