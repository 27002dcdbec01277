-- 0007: no two enabled routes the router cannot tell apart.
--
-- MT routes: the same partner scope (a partner, or NULL = any partner), destination prefix, priority and source
-- filter.  The router treats a NULL and an empty source_prefix / source_regex alike (no filter), so the index
-- does too.  MO routes: the same destination prefix, priority and source prefix (the partner is where an MO
-- goes, not a scope: of two such routes only the older was ever used).  Disabled routes are not evaluated,
-- so they may repeat an enabled one (a prepared alternative); enabling one is refused while its twin is
-- enabled.  The repositories (store/repos.py, RouteRepo / MoRouteRepo) turn a violation into an error naming
-- the existing route; the index makes that hold against concurrent admin commands.
--
-- Existing duplicates: the router chose the one with the lowest id (older first), so a later twin was used
-- only while the older one had no enabled operator; each later twin is disabled here, with a note in its
-- description.

-- Each UPDATE runs only when there is a twin: the tables' statement triggers would otherwise bump the config
-- version (a reload on every node) for nothing.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM routes r JOIN routes o ON o.id < r.id
               WHERE r.enabled AND o.enabled
                 AND coalesce(o.partner_id, 0) = coalesce(r.partner_id, 0)
                 AND o.dest_prefix = r.dest_prefix AND o.priority = r.priority
                 AND coalesce(o.source_prefix, '') = coalesce(r.source_prefix, '')
                 AND coalesce(o.source_regex, '') = coalesce(r.source_regex, '')) THEN
        UPDATE routes r
        SET enabled = false,
            description = ltrim(r.description || ' [disabled by migration 0007: same as route '
                || (SELECT min(o.id) FROM routes o
                    WHERE o.enabled
                      AND coalesce(o.partner_id, 0) = coalesce(r.partner_id, 0)
                      AND o.dest_prefix = r.dest_prefix
                      AND o.priority = r.priority
                      AND coalesce(o.source_prefix, '') = coalesce(r.source_prefix, '')
                      AND coalesce(o.source_regex, '') = coalesce(r.source_regex, '')) || ']')
        WHERE r.enabled
          AND EXISTS (SELECT 1 FROM routes o
                      WHERE o.enabled AND o.id < r.id
                        AND coalesce(o.partner_id, 0) = coalesce(r.partner_id, 0)
                        AND o.dest_prefix = r.dest_prefix
                        AND o.priority = r.priority
                        AND coalesce(o.source_prefix, '') = coalesce(r.source_prefix, '')
                        AND coalesce(o.source_regex, '') = coalesce(r.source_regex, ''));
    END IF;
    IF EXISTS (SELECT 1 FROM mo_routes r JOIN mo_routes o ON o.id < r.id
               WHERE r.enabled AND o.enabled AND o.dest_prefix = r.dest_prefix AND o.priority = r.priority
                 AND o.source_prefix = r.source_prefix) THEN
        UPDATE mo_routes r
        SET enabled = false,
            description = ltrim(r.description || ' [disabled by migration 0007: same as MO route '
                || (SELECT min(o.id) FROM mo_routes o
                    WHERE o.enabled AND o.dest_prefix = r.dest_prefix AND o.priority = r.priority
                      AND o.source_prefix = r.source_prefix) || ']')
        WHERE r.enabled
          AND EXISTS (SELECT 1 FROM mo_routes o
                      WHERE o.enabled AND o.id < r.id AND o.dest_prefix = r.dest_prefix AND o.priority = r.priority
                        AND o.source_prefix = r.source_prefix);
    END IF;
END
$$;

CREATE UNIQUE INDEX routes_identity ON routes
    (coalesce(partner_id, 0), dest_prefix, priority, coalesce(source_prefix, ''), coalesce(source_regex, ''))
    WHERE enabled;
CREATE UNIQUE INDEX mo_routes_identity ON mo_routes (dest_prefix, priority, source_prefix) WHERE enabled;
