"""A study read for people: its summary (`summary`: what `run` ends with, `show`, `studies`),
the HTML study report (`html_report`, its charts in `report_charts`) and the figures and
evaluation files logged to MLflow (`figures`).

Reads the stores and records; below the session and the exports, which log its figures and
sum up with it.
"""
