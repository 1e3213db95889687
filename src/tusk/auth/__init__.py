"""Identity and permissions: tokens, roles and the audit log, and the one check every edge calls.

``tusk.auth.permissions`` holds the table of what each operation of each edge needs;
``tusk.auth.service.AuthService.authorize`` is the only gate. It sits just above storage so
that PFS, PPS and every edge may call it.
"""
