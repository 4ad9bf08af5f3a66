"""`thinktune ui`: the web page over the library (issue 16). server.py serves it, app.py lays it
out, page.py / talk.py / jobs.py do the work, text.py holds every word in English and Chinese."""
