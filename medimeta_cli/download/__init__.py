"""Downloading datasets: the plan, one dataset's job, and a whole run."""
