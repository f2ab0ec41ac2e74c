"""`make bench`: figures the issues ask for, each as a ratio against a peer measured in the same run."""
