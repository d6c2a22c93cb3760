"""How a run is executed: on a Dramatiq worker through RabbitMQ (``broker``) or here (``inline``)."""
