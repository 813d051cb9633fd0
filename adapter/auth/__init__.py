"""API clients, their scopes, and the access tokens the service issues them."""
