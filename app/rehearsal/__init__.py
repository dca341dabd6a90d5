"""`diemcau rehearse`: a whole conference on one machine, scripted, with a report.

`server` starts the real server in a process of its own; `staff` holds the hall (program out, the
floor in) and the moderator; `script` runs the conference with the simulated rooms of
`app.simulate` and reports what every side saw.
"""
