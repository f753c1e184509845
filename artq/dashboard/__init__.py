"""What analysts look at: the dashboard tables the chord callback refreshes, and the web page."""
