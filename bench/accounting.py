"""Where the CPU and memory went: server process trees, the load generator, the machine.

Server CPU is user + system time of every process of the system under test and all
their descendants (gunicorn's workers, say), plus Redis, read from /proc with psutil
before and after each phase. A process that exits in between loses its share, so
phases run on processes that live through them.
"""

import psutil


class ProcessTrees:
    """Named root processes, each counted with its descendants."""

    def __init__(self, roots):
        self.roots = {name: psutil.Process(pid) for name, pid in roots.items()}

    def _members(self, root):
        try:
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self):
        """Role → CPU seconds used so far by the role's process tree."""
        usage = {}
        for name, root in self.roots.items():
            total = 0.0
            for process in self._members(root):
                try:
                    times = process.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
            usage[name] = total
        return usage

    def rss(self):
        """Role → resident bytes of the role's process tree."""
        usage = {}
        for name, root in self.roots.items():
            total = 0
            for process in self._members(root):
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            usage[name] = total
        return usage


def machine_busy_seconds():
    """CPU seconds the whole machine was busy (every core), for spotting other load."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def delta(after, before):
    return {name: after[name] - before.get(name, 0.0) for name in after}
