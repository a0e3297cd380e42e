"""The operator commands of ``allotment``: ``hosts``, ``explain``, ``capacity``, ``audit``
and the host ``agent``. ``cli.py`` registers them (``main.register``) and hands them the
parsed arguments (``main.run``); each talks to a server (or, where it makes sense, the
database) the same way (``commands.api``)."""
