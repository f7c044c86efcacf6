"""Operations: backups and restores of the database (``prolo backup``, ``prolo restore``).

Durability itself lives where the connections are made (``prolo.db``: SQLite WAL with
``synchronous=FULL``, PostgreSQL ``synchronous_commit`` never off); ``docs/deploy.md``
describes running prolo in production.
"""
