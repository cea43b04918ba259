"""The edge's conversation with control: routing state in, tunnel reports out."""
