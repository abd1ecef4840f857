"""The console's pages, one module per section."""

from console.pages import (
    admin,
    auth,
    home,
    matchmaking,
    members,
    newsletter,
    operations,
    partners,
    projects,
    public,
    segments,
)

ROUTERS = [
    auth.router,
    home.router,
    members.router,
    projects.router,
    newsletter.router,
    segments.router,
    matchmaking.router,
    admin.router,
    partners.router,
    operations.router,
    public.router,
]
