"""From class probabilities to labels: the seeded watershed, in memory or band by band."""
