"""The agent side of the edge: agent sessions, who may open one (tokens), and the share of
a tunnel's streams each visitor address may hold."""
