"""Publish one message: python -m service.manage groupcast_publish news '{"text": "hello"}'"""

import json

from django.core.management.base import BaseCommand, CommandError

from service.groups import GROUP_RULE, is_group_name
from service.storage.clients import REDIS_FAILURES
from service.storage.publishing import publish_message


class Command(BaseCommand):
    help = "Publish a JSON message to a group and print its offset."

    def add_arguments(self, parser):
        parser.add_argument("group")
        parser.add_argument("data", help="the message, as JSON")

    def handle(self, *args, group, data, **options):
        if not is_group_name(group):
            raise CommandError(f"group must be {GROUP_RULE}")
        try:
            value = json.loads(data)
        except ValueError as error:
            raise CommandError(f"data is not JSON: {error}") from None
        try:
            self.stdout.write(publish_message(group=group, data=value))
        except REDIS_FAILURES as error:
            raise CommandError(f"Redis is unreachable: {error}") from None
