"""Schedules: snapshots (and backups) taken by the daemon at set times, with a retention rule.

`spec` parses what the user gives (interval, cron, keep rule); `retention`
decides what a rule keeps; `records` keeps schedules and what they made in
the catalog; `service` does one run; `runner` starts runs when they are due,
on a clock that tests can drive (`clock`).
"""
