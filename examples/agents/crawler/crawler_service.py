"""The crawler agent's service process (launched by the runtime from crawler-agent.yaml)."""

from crawler_agent import CrawlerAgent

if __name__ == "__main__":
    CrawlerAgent.run()
