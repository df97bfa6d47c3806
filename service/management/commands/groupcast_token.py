"""Mint a client token: django-admin groupcast_token user-1 news sports --ttl 3600"""

from django.core.management.base import BaseCommand, CommandError

from service.groups import GROUP_RULE, is_group_name
from service.tokens import token_issue


class Command(BaseCommand):
    help = "Print a client token (JWT) for a subject and the groups it may subscribe to."

    def add_arguments(self, parser):
        parser.add_argument("sub", help="who the token is for, e.g. user-1")
        parser.add_argument("groups", nargs="+", help="groups the token allows")
        parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")

    def handle(self, *args, sub, groups, ttl, **options):
        bad = [group for group in groups if not is_group_name(group)]
        if bad:
            raise CommandError(f"not group names: {', '.join(bad)} (each must be {GROUP_RULE})")
        if ttl < 1:
            raise CommandError("--ttl must be at least 1")
        self.stdout.write(token_issue(sub=sub, groups=groups, ttl=ttl))
