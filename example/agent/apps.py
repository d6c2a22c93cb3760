from django.apps import AppConfig


class AgentConfig(AppConfig):
    name = "example.agent"
    label = "agent"
    verbose_name = "Proactive agent"
