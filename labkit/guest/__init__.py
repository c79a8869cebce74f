"""What runs in the lab VM's guest at the system level, below everything the lab does there.

``init``      the guest's init: mounts, the host's folders, then the agent
``agent.py``  the guest agent: runs the host's commands (stdlib only, started by init)
``netns``     network namespaces the lab creates (``NetNS``), owned by context managers
``cgroup``    a cgroup v2 directory the lab owns (``Cgroup``), for cgroup_skb and sock_ops
``bcc_run.py`` a bcc program run by Debian's Python in the guest (``labkit.course.bcc``)
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "netns": "NetNS",
    "cgroup": "Cgroup",
})
