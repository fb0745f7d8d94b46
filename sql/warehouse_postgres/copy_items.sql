-- Bulk load of the staged items: CSV rows streamed over COPY.
copy staged_items (item_id, title, attributes, first_seen, last_seen, n_users, popularity)
from stdin with (format csv)
