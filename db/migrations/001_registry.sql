-- Regions (GB/T 2260), mines, monitored sites and sensors: loaded from the registry file.
CREATE TABLE region (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9]{6}$'),
    name        text NOT NULL,
    level       text NOT NULL CHECK (level IN ('province', 'city', 'county')),
    parent_code text REFERENCES region (code)
);

CREATE TABLE mine (
    id          serial PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    kind        text NOT NULL,
    region_code text NOT NULL REFERENCES region (code),
    evacuation  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mine_region ON mine (region_code text_pattern_ops);

CREATE TABLE site (
    id                serial PRIMARY KEY,
    code              text NOT NULL UNIQUE,
    mine_id           integer NOT NULL REFERENCES mine (id),
    name              text NOT NULL,
    kind              text NOT NULL,
    height_m          double precision,
    crest_elevation_m double precision,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sensor (
    id         serial PRIMARY KEY,
    mine_id    integer NOT NULL REFERENCES mine (id),
    site_id    integer NOT NULL REFERENCES site (id),
    code       text NOT NULL,
    kind       text NOT NULL,
    name       text,
    channels   text[] NOT NULL,
    interval_s double precision NOT NULL,
    baseline   jsonb NOT NULL DEFAULT '{}',
    thresholds jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mine_id, code)
);
CREATE INDEX sensor_site ON sensor (site_id);
