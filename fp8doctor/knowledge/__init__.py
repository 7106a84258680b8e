"""What each library release does, derived from the lab's observations (lab/observations) and tested against them."""
