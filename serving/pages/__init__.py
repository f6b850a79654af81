"""The review pages: templates, static files (vanilla JS, no CDN) and message catalogues."""
