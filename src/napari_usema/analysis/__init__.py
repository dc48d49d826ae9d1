"""Looking at results and at the network: metrics, attention maps, attention dispersion."""
