from django.apps import AppConfig


class GroupcastConfig(AppConfig):
    name = "service"
    label = "service"
    verbose_name = "groupcast"
