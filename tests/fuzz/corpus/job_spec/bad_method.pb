/srv/models/m
/srv/out/o"
nope*
/srv/data/c.txt (@@