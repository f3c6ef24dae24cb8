"""The dashboard under /ui, served by the API process: server-rendered Jinja2 pages, vendored
htmx and uPlot (no CDN, no front-end build), sign-in with an API key kept in an HttpOnly,
SameSite=Strict cookie. It calls the same domain services as the API, scoped to the tenant."""
