"""Mint a client token: python -m service.manage groupcast_token user-1 news sports --ttl 3600"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from service.groups import GROUP_RULE, is_group_name
from service.tokens import token_issue


class Command(BaseCommand):
    help = "Print a client token (JWT) for a subject and the groups it may subscribe to."

    def add_arguments(self, parser):
        parser.add_argument("sub", help="who the token is for, e.g. user-1")
        parser.add_argument("groups", nargs="+", help="groups the token allows")
        parser.add_argument("--ttl", type=int, default=None,
                            help="lifetime in seconds (default: 3600, or GROUPCAST_TOKEN_MAX_TTL if lower)")

    def handle(self, *args, sub, groups, ttl, **options):
        bad = [group for group in groups if not is_group_name(group)]
        if bad:
            raise CommandError(f"not group names: {', '.join(bad)} (each must be {GROUP_RULE})")
        longest = settings.GROUPCAST_TOKEN_MAX_TTL
        if ttl is None:
            ttl = min(3600, longest)
        # the cap POST /tokens applies, and that a token is checked against when it is used
        if not 1 <= ttl <= longest:
            raise CommandError(f"--ttl must be from 1 to {longest} seconds (GROUPCAST_TOKEN_MAX_TTL)")
        self.stdout.write(token_issue(sub=sub, groups=groups, ttl=ttl))
