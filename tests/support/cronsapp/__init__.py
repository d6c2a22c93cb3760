"""An installed app with a ``crons`` module, for the crons autodiscovery tests."""
