"""Services of the runs app: the only code that writes runs, steps and the journal."""
