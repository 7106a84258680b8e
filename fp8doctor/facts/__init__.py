"""Facts about this machine, each read by a small getter; collect.collect_facts gathers them into one dict."""
