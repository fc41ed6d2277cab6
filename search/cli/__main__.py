"""`python -m search.cli`: how --workers starts its worker processes."""

from search.cli import app

app()
