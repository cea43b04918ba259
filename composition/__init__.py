"""Where Burrow's roles are put together: ``burrowd`` (``composition.cli``) builds the edge,
the control service, a worker or the whole dev stack from the config file and flags. The one
package allowed to import every other (setup.cfg's import-linter contracts); each role
imports only what it runs, so an edge does not load the control plane or the agent."""
