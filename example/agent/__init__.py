"""The proactive agent of the example: six crons that watch documents and deliveries, remember, and mail."""
