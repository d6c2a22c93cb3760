"""The /sandbox/jobs/ page: which mode jobs run in, the enqueue seam, a demo job, and the agent's crons."""
