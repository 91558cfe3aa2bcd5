"""`alems dashboard`: a local web app over the results database (read-only).

Pages: the batch sessions, one batch (headline tax from alems.analysis.summary, tables,
distributions, phases, warnings), one run (power per energy domain with its phases), two
batches compared, and a live view of a running batch. Needs the `dashboard` extra."""
