-- The marketplace's tables on SQLite (the default database).
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- `user_id` is whoever the request named (x-user-id), not a foreign key.
CREATE TABLE transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT,
    product_id BIGINT REFERENCES products (id),
    amount_cents BIGINT NOT NULL,
    method TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- The demo user (id 1000; registered users come after it) and two products.
INSERT INTO users (id, name) VALUES (1000, 'demo');
INSERT INTO products (name, price_cents) VALUES ('Keyboard', 4900), ('Monitor', 19900);
