-- Returns the number of list entries published for $as_of_date.
select count(*) as n_rows
from recommendations
where as_of_date = $as_of_date
