"""Third-party code kept verbatim inside catdog (see README.md in this folder for each file's source,
licence, and the test that checks it is unchanged). Nothing here is edited by hand."""
